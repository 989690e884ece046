"""The HTTP front end: validates requests, writes job records, sends tasks, answers reads.

It must never import TensorFlow, Keras or worker code (a test checks this).
"""
