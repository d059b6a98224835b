"""The daemon's routes, by resource."""
