"""Plain networks: any MXNet network no detector family recognises (a classifier, a face
embedder, a feature extractor), converted up to its own outputs under their own names.

Its proof is the base every conversion gets (each output against float64 MXNet, bounded by
MXNet float32's own error); a vector output adds the agreement a classifier or an embedder is
used for (`vectors`: top-1/top-5 against Gluon, cosine against float64). `family` wires it to the
family seam as the fallback family (`ssdconv.family.registered.FALLBACK_MODULE`), `zoo` names
the GluonCV classification builders it claims.
"""
