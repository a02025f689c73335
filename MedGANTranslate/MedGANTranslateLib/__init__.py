"""MedGANTranslate engine: translate a 3D scan into a synthetic modality with a pretrained generator.

Pure Python on torch, MONAI, SimpleITK and numpy; imports neither ``slicer`` nor ``qt``. The public entry
points are :class:`MedGANTranslateLib.pipeline.Translator` (images in memory),
:func:`MedGANTranslateLib.file_translation.translate_files` (files) and the ``medgan-translate`` command line.
"""
__version__ = "0.1.0"
