"""Weight files: the table of official files and the one loader that opens them."""
