"""RSD (Restoration Score Distillation): corruption-aware teacher pretraining (phase I) and,
later, score-identity distillation (phase II). See ``hypir.rsd.edm`` and ``hypir.rsd.objectives``."""
