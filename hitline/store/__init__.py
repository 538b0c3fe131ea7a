"""Stores outside the job table that the line writes and reads: the Milvus collection of hit products."""
