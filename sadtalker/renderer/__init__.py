"""SadTalker's face renderer: keypoint detector, MappingNet, occlusion-aware SPADE generator, and the stage
that turns 3DMM coefficients into frames (:mod:`sadtalker.renderer.stage`)."""
