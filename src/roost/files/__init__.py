"""Reading and rewriting image files: atomic writes, EXIF orientation, container surgery, upright rotation.

Nothing is imported here, so that ``roost.files.atomic`` stays a light, stdlib-only import.
"""
