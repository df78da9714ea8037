"""Engine-side inference: no TensorFlow import here or in any submodule (a test enforces it).

- :mod:`.wire`: TF Serving ``PredictRequest`` encoder / ``PredictResponse`` decoder by hand.
"""
