"""A sweep's plan before anything trains: its jobs, what each costs here, and its rows that are one function.

    python -m ablate.plan -m +sweep=table5 model=xs seed=0,1,2      # the sweep's own arguments

``jobs`` expands the sweep as Hydra will, ``cost`` prices each distinct model (params, MACs, memory, disk, speed),
``plan`` projects wall times and finds rows that compute the same function, and writes plan.json and plan.txt.
"""
