"""Tools the model can call: python sandbox, browser, and the function-calling loop."""
