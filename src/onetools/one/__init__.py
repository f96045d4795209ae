"""OpenNebula objects: one interface (``api.OneApi``), two implementations chosen at run time.

``connect()`` picks the implementation: a real front-end over XML-RPC when an endpoint is
given (option, ``ONE_XMLRPC``, ``~/.one/one_endpoint``), the embedded store otherwise.
Implementations are named by dotted path and imported on first use (fsspec's registry idea):
naming one costs nothing, so ``--help`` never imports pyone.
"""
