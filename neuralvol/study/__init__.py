"""Studies that regenerate the tables of docs/STUDY.md."""
