from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path
from fastapi.responses import Response

from communication_agent.api.deps import CurrentActor, SessionDep
from communication_agent.models.schemas.common import MAX_DB_INT, ErrorResponse
from communication_agent.services import attachments

router = APIRouter(prefix="/messages", tags=["tickets"])

DbId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


@router.get(
    "/{message_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: {"model": ErrorResponse}},
    summary="Download an attachment (extracted from the stored message on demand)",
)
async def download_attachment(
    session: SessionDep, _actor: CurrentActor, message_id: DbId, attachment_id: DbId
) -> Response:
    content = await attachments.attachment_content(session, message_id, attachment_id)
    # Always a download, never rendered: attachment content is untrusted.
    return Response(
        content=content.data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(content.filename)}",
            "X-Content-Type-Options": "nosniff",
            "X-Original-Content-Type": content.content_type,
        },
    )
