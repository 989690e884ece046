"""The wire contract the API and the worker both import: settings, job schema, store, manifests.

Nothing here may import TensorFlow, Keras or worker code.
"""
