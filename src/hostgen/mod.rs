//! Host config generation.
