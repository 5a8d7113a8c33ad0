"""Audio-to-motion stage: mel features, ExpNet (expression), PoseVAE (head pose), chunking and seams."""
