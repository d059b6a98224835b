"""minicon: shrink container filesystems to the files their applications really use."""
