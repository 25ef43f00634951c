"""Build bookkeeping and the shared pure helpers of every stage."""
