"""``camcontrast demo``: synthetic data in the real formats -> the bundle's stages -> a report folder.

``driver`` runs the chain and writes the report's frame for every setting; ``fundus``, ``cxr`` and ``mri3d``
each hold one setting (its plans of demo sizes for 2 CPU cores, its data, its runs and its report sections);
``common`` holds the pieces the settings share.
"""
