from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up (the only unauthenticated route)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
