"""The manifest: the Parquet tables users read, and how a run commits to them."""
