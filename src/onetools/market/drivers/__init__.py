"""One module per ``MARKET_MAD``; registered by dotted name so that naming a driver costs
nothing until it is used (``REGISTRY``)."""
