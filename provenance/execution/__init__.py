"""Where the work runs: one small executor interface, a local engine and a Dask engine."""
