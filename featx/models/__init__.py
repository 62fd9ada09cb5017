"""Final models: train on all the data, save a safe model folder, predict and explain new radiographs."""
