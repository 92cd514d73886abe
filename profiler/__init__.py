"""`phalanx.profiler`: a timeline of the training step, with `torch.profiler`'s API.

    with px.profiler.profile() as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    prof.export_chrome_trace("trace.json")       # Perfetto / chrome://tracing

It records op forward and backward spans, optimizer steps, DataLoader waits and each DDP
bucket's all-reduce (launch, run on the communication thread, wait; with its bytes); with
`profile_memory=True` each span's allocated-less-freed host memory (tracemalloc), with
`with_flops=True` PyTorch's FLOP estimates for matrix products and convolutions. Under
`phalanx run --profile DIR` (or with PHALANX_PROFILE=DIR in the environment) every rank records
its whole run, or the optimizer steps PHALANX_PROFILE_STEPS=START:STOP, with no change to the
script (`environment.py`), and the launcher merges the ranks' traces into one.
"""
from .events import EventList, FunctionEvent, FunctionEventAvg
from .session import (ProfilerAction, ProfilerActivity, profile, record_function, schedule,
                      supported_activities, tensorboard_trace_handler)

__all__ = ["EventList", "FunctionEvent", "FunctionEventAvg", "ProfilerAction",
           "ProfilerActivity", "profile", "record_function", "schedule",
           "supported_activities", "tensorboard_trace_handler"]
