"""Results: the paper's overall metrics (Eqs. 2-9), theoretical complexity, the per-cell tables
joined into results/*.parquet, and the six tracks."""
