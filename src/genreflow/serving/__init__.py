"""A trained model at work.

The served model, the MLflow pyfunc, windowed decoding, the exported core, the export
itself and the predict command's logic.
"""
