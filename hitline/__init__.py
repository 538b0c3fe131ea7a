"""hitline: new-product flat-lays in, marketplace promo images out, in the look of your best-sellers."""

__version__ = "0.1.0"
