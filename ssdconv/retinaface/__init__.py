"""insightface's RetinaFace behind the family seam: a face detector whose decode lives outside
its graph (anchors, the +1 width convention, landmarks, clipping, NMS in insightface's Python or
ncnn's C++ example).

The converted model keeps the nine raw outputs under the source's names, so insightface's decode
and ncnn's `examples/retinaface.cpp` read it as they read the MXNet model. `match` recognises the
outputs by structure, `anchors` holds insightface's inference anchors (options for others),
`decode` is a float64 model of insightface's decode and of ncnn's example's, `check` the faces
stage the check adds, `family` the wiring. Nothing outside this folder knows any of it.
"""
