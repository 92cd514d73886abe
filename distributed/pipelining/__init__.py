"""Pipeline parallelism with a manually split model, as `torch.distributed.pipelining`:
each rank builds a `PipelineStage` around its piece of the model, and a schedule
(`ScheduleGPipe`, `Schedule1F1B`) runs the microbatches through the stages.

| file | owns |
|---|---|
| `stage.py` | `PipelineStage`: one rank's submodule, its forward and backward per microbatch |
| `_messages.py` | the wire format between neighbouring stages (self-describing activations) |
| `schedules.py` | the schedules, as an order of forwards and backwards per stage |
| `microbatch.py` | splitting the batch into microbatches, merging the outputs |
| `_IR.py` | the tracing front end, which raises (no graph export) |
"""
from ._IR import Pipe, SplitPoint, pipe_split, pipeline
from .schedules import (PipelineScheduleSingle, Schedule1F1B, ScheduleDualPipeV, ScheduleGPipe,
                        ScheduleInterleaved1F1B, ScheduleInterleavedZeroBubble,
                        ScheduleLoopedBFS, ScheduleZBVZeroBubble, get_schedule_class)
from .stage import PipelineStage

__all__ = ["Pipe", "pipe_split", "SplitPoint", "pipeline", "PipelineStage", "Schedule1F1B",
           "ScheduleGPipe", "ScheduleInterleaved1F1B", "ScheduleLoopedBFS",
           "ScheduleInterleavedZeroBubble", "ScheduleZBVZeroBubble", "ScheduleDualPipeV",
           "PipelineScheduleSingle", "get_schedule_class"]
