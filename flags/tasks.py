from celery import shared_task


@shared_task(acks_late=True)
def apply_flag_schedules() -> None:
    from flags.services import do_apply_due_schedules

    do_apply_due_schedules()
