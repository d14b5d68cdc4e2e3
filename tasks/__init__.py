"""The pipeline's stages: plain functions over files, each with a command-line entry."""
