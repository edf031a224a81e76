"""Content units: unit sequences and their files (``sequences``), k-means fitting and labelling
(``kmeans``), and k-means models from files (``centroid_files``)."""
