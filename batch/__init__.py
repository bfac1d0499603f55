"""The batch pipeline: platform database -> Personalize datasets (``batch datasets``), and next the
Personalize resources, SIMS batch inference and the DynamoDB load (DESIGN.md, steps 1-5)."""
