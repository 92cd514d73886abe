"""The primitive op library, one file per family (each op a Function, forward and backward
side by side); composite ops are plain functions over primitives."""
