"""What AWS needs beside the functions: the template merged into Chalice's,
and the commands an operator runs (infra/README.md)."""
