"""Built-in plot plugins: every class defined in a module here is a plot."""
