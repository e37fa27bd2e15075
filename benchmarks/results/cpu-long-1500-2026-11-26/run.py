import time
from vssl.demo import MODELS, BUDGETS, run_demo
from dataclasses import replace
models = [m for m in MODELS if m.name in ("random init (R(2+1)D)", "video contrast", "tubelet contrast")]
budget = replace(BUDGETS["long"], pretrain_steps=1500)
t = time.time()
run_demo("/tmp/demo-long3", mode="long", budget=budget, models=models)
print("wall", time.time() - t)
