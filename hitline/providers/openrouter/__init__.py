"""providers/openrouter"""
