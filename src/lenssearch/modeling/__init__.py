"""The modeling network (HOLISMOKES IX): lens parameters with uncertainties, and the rejection of candidates by them
(HOLISMOKES XVI, Sect. 3.2). Stages ``modeling`` (:mod:`.stage`) and ``model-candidates`` (:mod:`.candidates`)."""
