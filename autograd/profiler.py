"""`torch.autograd.profiler`: PyTorch's older profiler API, over `phalanx.profiler`.

    with torch.autograd.profiler.profile(record_shapes=True) as prof:
        model(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total"))
"""
from ..profiler import EventList, FunctionEvent, record_function, session  # noqa: F401

__all__ = ["EventList", "FunctionEvent", "profile", "record_function"]


class profile(session.profile):
    """The legacy profiler: CPU spans of the block (`enabled=False` records nothing); the
    same tables, events and traces as `phalanx.profiler.profile`."""

    def __init__(self, enabled=True, *, use_cuda=False, use_device=None, record_shapes=False,
                 with_flops=False, profile_memory=False, with_stack=False, with_modules=False,
                 use_kineto=False, use_cpu=True, experimental_config=None, acc_events=False,
                 custom_trace_id_callback=None, post_processing_timeout_s=None,
                 activity_filters=None):
        for name, value in (("experimental_config", experimental_config),
                            ("custom_trace_id_callback", custom_trace_id_callback),
                            ("post_processing_timeout_s", post_processing_timeout_s),
                            ("activity_filters", activity_filters)):
            if value is not None:
                raise NotImplementedError(f"autograd.profiler.profile({name}=...) is not "
                                          f"supported; leave it None")
        if acc_events:
            raise NotImplementedError("autograd.profiler.profile(acc_events=True): each "
                                      "profile keeps its own events; leave it False")
        if not use_cpu:
            raise NotImplementedError("autograd.profiler.profile(use_cpu=False): Phalanx's "
                                      "profiler records CPU (host) spans only")
        activities = [session.ProfilerActivity.CPU]
        if use_cuda or (use_device is not None and str(use_device).startswith("cuda")):
            activities.append(session.ProfilerActivity.CUDA)   # refused, with the reason
        # use_kineto picks PyTorch's collector; the events are the same either way
        self.use_kineto, self.enabled = use_kineto, enabled
        super().__init__(activities=activities, record_shapes=record_shapes,
                         profile_memory=profile_memory, with_stack=with_stack,
                         with_flops=with_flops, with_modules=with_modules)

    def __enter__(self):
        if self.enabled:
            self.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stop()
        return False

    @property
    def function_events(self):
        return self.events()

    def table(self, sort_by=None, row_limit=100, max_name_column_width=55, header=None,
              top_level_events_only=False):
        return self.events().table(sort_by=sort_by, row_limit=row_limit,
                                   max_name_column_width=max_name_column_width, header=header,
                                   top_level_events_only=top_level_events_only)

    def total_average(self):
        return self.events().total_average()

    @property
    def self_cpu_time_total(self):
        return sum(e.self_cpu_time_total for e in self.events())
