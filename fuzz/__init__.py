"""Fuzzing of crpy's image readers (issue 13): a structure-aware mutator of CRIU-framed images
(fuzz.protomut), the fuzz targets, one per reader (fuzz.targets), and the driver that feeds each
image type of real dumps through them under atheris (fuzz.run; `make fuzz` runs a short pass).
"""
