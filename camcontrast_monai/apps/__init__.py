"""Applications on top of the library: finding, exporting and running the bundles."""
