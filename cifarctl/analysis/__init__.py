"""Analysis of finished runs: reading, grouping and comparing run folders."""
