"""GluonCV YOLOv3 behind the detector-family seam: recognised in `match`, proven in `decode`,
synthesised from stock layers in `synth`, checked in `check`; `family` wires it up."""
