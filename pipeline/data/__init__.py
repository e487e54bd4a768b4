"""The data layer: the canonical tables' contract, the readers of every export shape, the
streamed Parquet event log, the engines (DuckDB, Spark) and the sample generator."""
