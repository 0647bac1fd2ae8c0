"""Plain functions behind the stages: decoding, depth inference, quantisation. No Ray here."""
