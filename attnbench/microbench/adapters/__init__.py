"""One kernel adapter per backend (registry.Backend.microbench names them as "module:Class")."""
