"""Tables and figures from the workflow's metric files and HDF5 caches."""
