"""``camcontrast demo``: synthetic data in the real formats -> the bundle's stages -> a report folder.

One module per setting (``fundus``, ``cxr``, ``mri3d``), each with a plan of demo sizes for 2 CPU cores;
``common`` holds what they share.
"""
