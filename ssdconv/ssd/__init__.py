"""The SSD detector family (GluonCV SSDs): head matching, anchor derivation and proof, tail
synthesis, its check stage and zoo facts. `family.py` puts it behind the seam
(`ssdconv.family.interface`); `ssdconv.family.registered` names it."""
