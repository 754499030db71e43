"""Data sources: recording folders, manifest datasets, Human3.6M, MPI-INF-3DHP."""
