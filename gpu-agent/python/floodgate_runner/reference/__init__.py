"""The reference text-to-video model (random weights): see model.py, nets.py and generate.py."""
