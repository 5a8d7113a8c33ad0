"""SadTalker inference, reimplemented: one face image + speech audio -> talking-head video.

Importing this package is cheap: no torch, no model. Submodules import what they need.
"""
