"""The demos (``make demo``, ``make demo-video``): they orchestrate the packages (stage 1 then AVST, the
extractors then training then answering), so they live above ``masn``, ``avst`` and ``grounding_gen``, and
none of those imports them."""
