"""The exec program: its ABI, compiling and loading it, its maps, links and pins."""
